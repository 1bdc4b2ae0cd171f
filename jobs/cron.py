"""The schedule ``tabula cron`` (RQ's cron scheduler) runs: ``rq cron jobs.cron``."""

from rq import cron

from jobs import exports
from jobs.crm import OVERDUE_SCHEDULE, scheduled_overdue
from jobs.records import PURGE_SCHEDULE, scheduled_purge
from jobs.runtime import RECONCILE_SCHEDULE, scheduled_reconcile

cron.register(scheduled_purge, queue_name="default", cron=PURGE_SCHEDULE, name="purge_recycle_bin")
cron.register(scheduled_overdue, queue_name="default", cron=OVERDUE_SCHEDULE, name="refresh_overdue_invoices")
cron.register(scheduled_reconcile, queue_name="default", cron=RECONCILE_SCHEDULE, name="reconcile_jobs")
cron.register(
    exports.scheduled_purge, queue_name="default", cron=exports.PURGE_SCHEDULE, name="purge_expired_exports"
)

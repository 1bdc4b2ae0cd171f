"""The schedule ``tabula cron`` (RQ's cron scheduler) runs: ``rq cron jobs.cron``."""

import os

from rq import cron

import config
from jobs import exports, mail_automations, mailings, schema
from jobs.crm import OVERDUE_SCHEDULE, scheduled_overdue
from jobs.records import PURGE_SCHEDULE, scheduled_purge
from jobs.runtime import RECONCILE_SCHEDULE, scheduled_reconcile

cron.register(scheduled_purge, queue_name="default", cron=PURGE_SCHEDULE, name="purge_recycle_bin")
cron.register(scheduled_overdue, queue_name="default", cron=OVERDUE_SCHEDULE, name="refresh_overdue_invoices")
cron.register(scheduled_reconcile, queue_name="default", cron=RECONCILE_SCHEDULE, name="reconcile_jobs")
cron.register(
    exports.scheduled_purge, queue_name="default", cron=exports.PURGE_SCHEDULE, name="purge_expired_exports"
)
cron.register(
    exports.dispatch_schedules,
    queue_name="default",
    interval=config.schedule_seconds(os.environ),
    name="dispatch_export_schedules",
)
cron.register(
    mail_automations.scheduled_daily, queue_name="default", cron=mail_automations.DAILY_SCHEDULE,
    name="mail_automations_daily",
)  # fmt: skip
cron.register(
    mail_automations.scheduled_tasks, queue_name="default", cron=mail_automations.TASK_SCHEDULE,
    name="mail_task_reminders",
)  # fmt: skip
cron.register(
    mailings.scheduled_take_up, queue_name="default", cron=mailings.STALLED_SCHEDULE, name="mailings_take_up"
)
cron.register(
    schema.scheduled_reconcile, queue_name="default", cron=schema.CONVERSIONS_SCHEDULE,
    name="reconcile_conversions",
)  # fmt: skip

"""The schedule ``tabula cron`` (RQ's cron scheduler) runs: ``rq cron jobs.cron``."""

from rq import cron

from jobs.records import PURGE_SCHEDULE, scheduled_purge

cron.register(scheduled_purge, queue_name="default", cron=PURGE_SCHEDULE, name="purge_recycle_bin")

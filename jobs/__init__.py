"""Background jobs on RQ: queues, the job runtime (app context, progress, durable outcome), job functions."""

from jobs.queues import JobQueueUnavailable, enqueue, redis_connection

__all__ = ["JobQueueUnavailable", "enqueue", "redis_connection"]

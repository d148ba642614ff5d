"""sfnode: the worker app of a SecretFlow federation node.

One module per concern: ``config`` (the env file), ``federation`` (the
federation file), ``spec`` (job specs), ``runner`` and ``kinds`` (the job's own
process), ``supervise`` (its parent side), ``app`` (Celery), ``probe`` (Ray
resources), ``cli`` (the ``sfnode`` command).
"""

__version__ = "0.1.0"

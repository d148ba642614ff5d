"""sfnode: the worker app of a SecretFlow federation node.

One module per concern; imports only go down this list (a module imports
only modules listed above it):

- ``problems``: the one problems collector and its error (every problem of an input at once)
- ``components``: a pipeline step's component and attributes, checked against the catalogue
- ``netprobe``: TCP probes (port open, how a host answers, what listens here)
- ``jobdir``: the job directory protocol between supervisor and runner (files, atomic writes)
- ``catalogue``: SecretFlow's component definitions, written once per venv as JSON
- ``journal``: the audit journal (append-only JSON lines: proposals, decisions, starts, ends)
- ``config``: this node's env file (``NodeConfig``, port ranges and slots, unit names)
- ``retention``: what a node keeps on disk (finished jobs' work dirs, Ray's old session logs)
- ``federation``: the federation file (every party's address and port ranges)
- ``gate``: the port gate (a job's ports take only its parties), its root helper and its client
- ``jobspec``: a validated job spec (``JobSpec``, ``PartySpec``)
- ``sfargs``: SecretFlow's arguments built from a job (``sf.init``, ``sf.SPU``), ``JobContext``
- ``compeval``: a pipeline's steps, each run by SecretFlow's component entry in a process of its own
- ``kinds``: the job kinds, one module each (params check + run function), found by discovery
- ``spec``: expand and validate job specs (generic fields, then the kind's own check)
- ``policy``: this party's job policy (what each peer may propose) and its decisions
- ``warm``: the Ray head's warm workers (idle, SecretFlow imported), topped up around jobs
- ``runner``: the job's own process (``python -m sfnode.runner``)
- ``supervise``: its parent side (slot lock, deadline, answers, the standby runner), called by the Celery task
- ``broker``: the Celery wire (task names, JSON-only settings, timeouts)
- ``health``: versions of the venv and the Ray head's resources (via ``python -m sfnode.probe``)
- ``probe``: the Ray probe's own process
- ``channel``: the job channel between nodes (HTTPS, mutual TLS with the party certificates)
- ``app``: the Celery app (``celery -A sfnode.app worker``)
- ``status``: ``sfnode status``, one node's state and verdict
- ``cli``: the ``sfnode`` command
"""

__version__ = "0.1.0"

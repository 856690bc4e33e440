"""Watching the jobs from outside: heartbeat pings to an uptime monitor, and its checks.

``targets.py`` resolves each job's ping URL from the settings, ``pings.py`` says
what each ping carries per protocol (pure), ``sender.py`` sends them (one ordered,
bounded queue per target), and ``monitor_spec.py``/``monitor_sync.py`` provision the
Healthchecks checks from the job registry (``jobs sync-monitors``).
"""

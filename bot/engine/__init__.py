"""Durable execution of playbooks on DBOS.

A run is a DBOS workflow whose id is the run id. It interprets a pinned copy of the
playbook (the exact text and its SHA-256 travel with the run), so editing a file never
changes a run in flight. Every action call is a DBOS step: after a crash the next
process resumes the run, finished steps are not repeated, and a step that was in
flight runs again with the same idempotency key.
"""

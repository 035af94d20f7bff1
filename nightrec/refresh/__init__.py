"""Intra-day refresh: the users active since the last run get new lists from the serving model.

A refresh extends the latest published night (its run date ``D``): it reads the events after the
watermark (``state``), keeps the accepted ones beside that night's files, and rebuilds the
histories of the users they touch from the night's clean events plus every event accepted by the
day's refreshes (``events``). The flow (``flows.refresh``) scores those histories with the kernel
the nightly uses and publishes only their rows (``nightrec.publish.refresh``).
"""

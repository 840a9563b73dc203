"""Hooks: signed HTTP calls that let an application authorize uploads and learn what was stored.

`signing` signs each call; `events` builds what each hook carries; `caller` makes the calls
(pre-create answers before any byte of a file is stored); `outbox` keeps post-finish and
post-abort events in the bucket until a background deliverer gets a 2xx for each.
"""

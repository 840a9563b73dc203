"""What the tests and the benchmark share: the processes they start (the loopback S3 store and a
fault-injecting proxy in front of it, the app under an ASGI server, nginx from the project's
templates, curl), what those processes cost, the buckets they store into, and the request
bodies they send.

Not shipped (the wheel holds `app` only): the tests and `python -m bench` import it from the
repository's root. Where a shipped command already does a job (the embedded store's rclone
command, the upload client's multipart encoder, the load test's RSS reading and generated
files), the harness calls that code instead of doing it again.
"""

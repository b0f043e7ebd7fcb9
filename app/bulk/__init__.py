"""Bulk embedding: a corpus in, vectors out, resumable (`embedding-service bulk`, app/cli.py).

records.py reads the input as a stream, sinks.py writes each chunk whole and the output at the end,
remote.py and embedders.py turn texts into vectors (running instances, or the engine in this process),
job.py ties them together, progress.py shows it. Nothing here is imported by the service itself.
"""

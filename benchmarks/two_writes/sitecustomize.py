"""On PYTHONPATH, gunicorn writes a response's head and body in two calls, as it does on its own: the
baseline for app/gunicorn_response.py in benchmarks/small_requests.py. Marks gunicorn's own write as the
one-write one, so `gunicorn_response.install()` leaves it in place."""

from gunicorn.http import wsgi

wsgi.Response.write.one_write = True

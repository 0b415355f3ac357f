"""Entry points: the HTTP functions, the Pub/Sub consumers and the `ion` command.

They translate a request, message or command line into a call on the app that
`ion.bootstrap` built, and are the only callers of `ion.bootstrap`.
"""

"""`safeflag demo` (contract section 1): a synthetic borough and the end-to-end safeguarding story,
played over HTTP against the app running in-process on the configured database.

`borough.py` the reference data (ids chosen here, test-range NHS numbers only), `receiver.py` the
0-19 service's webhook endpoint, `story.py` the steps, `cli.py` the command and its output.
"""

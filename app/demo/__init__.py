"""`safeflag demo`: a synthetic borough and the end-to-end safeguarding story,
played over HTTP against the app running in-process on the configured database.

`borough.py` the reference data (ids chosen here, test-range NHS numbers only), `receiver.py` the
0-19 service's webhook endpoint, `story.py` the steps. The command and its output are app/demo_cli.py:
it builds the app and a dispatcher, so it sits with the composition at the top, above this package
(whose borough's people the web app's development sign-in also signs in as).
"""

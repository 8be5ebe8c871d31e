"""FHIR search over the store: the toolkit's parsed searches (`app/fhir/search/`: parameters, criteria,
index definitions) compiled to SQL over storage's tables (`sql.py`), run with their totals and includes
(`executor.py`), and prepared once for the searches the rules run on every write (`prepared.py`). It
sits above both the FHIR toolkit and storage, so that neither of them imports the other.
"""

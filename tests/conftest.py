"""Test-suite root. pytest puts the folder of a conftest.py on sys.path, which lets every test
import the shared ``cli_helpers`` whichever subset of the suite runs."""

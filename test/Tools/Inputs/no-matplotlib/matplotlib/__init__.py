# Put first on PYTHONPATH, this package stands for a machine without
# matplotlib: importing it fails as a missing module would.
raise ImportError("matplotlib is hidden by the test's PYTHONPATH")

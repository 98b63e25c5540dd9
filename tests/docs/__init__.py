"""The documentation's promises: every example runs, every link and command holds."""

"""The command line: run, doctor, report, bench, send, dataset..."""

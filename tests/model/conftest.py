from __future__ import absolute_import, print_function


def pytest_terminal_summary(terminalreporter):
    from . import test_model
    if test_model.SUMMARIES:
        terminalreporter.write_sep('-', 'model: states and interleavings explored')
        for line in test_model.SUMMARIES:
            terminalreporter.write_line(line)

"""What more than one test module needs: keys, settings, recorded bodies, requests, jobs, processes, simulators.

The rule: test modules never import each other, and no test module imports from a conftest.py. A
helper that a second module needs moves here, into the module named by its noun; a conftest.py
holds pytest fixtures only, and imports what they use from here.
"""

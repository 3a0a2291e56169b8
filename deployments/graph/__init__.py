"""The graph stage: GraphService (service.py) and its Serve deployment; sub-packages hold the parts it wires."""

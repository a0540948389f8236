"""The service layer.

Commands, the group committer, process managers, and the platforms' inbound,
outbound and sync.
"""

"""Kuaishou Shop (快手小店) connector: protocol, translation, client and policy."""

"""Douyin Shop (抖店) connector: protocol, translation, client and policy."""

"""Youzan cloud (有赞云) connector: protocol, translation, client and policy."""

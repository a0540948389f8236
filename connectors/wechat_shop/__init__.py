"""WeChat Shop (微信小店) connector: protocol, translation, client and policy."""

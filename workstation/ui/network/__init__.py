"""Widgets over the network service: the transfers panel and the nodes dialog."""

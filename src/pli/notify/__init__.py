"""Outgoing notifications: e-mail now (``pli.notify.email``); SMS joins it later.

Notifications never carry health data (architecture invariant 2): a neutral sentence, the
sender's name and a link.
"""

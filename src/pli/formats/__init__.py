"""Date and number formats of Pli's languages, where Django's own do not fit (FORMAT_MODULE_PATH)."""

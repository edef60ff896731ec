"""plugin_api"""

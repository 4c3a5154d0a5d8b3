"""sddkit.cli"""

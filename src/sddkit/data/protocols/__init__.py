"""sddkit.data.protocols"""

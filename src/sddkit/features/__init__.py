"""sddkit.features"""

"""sddkit.service"""

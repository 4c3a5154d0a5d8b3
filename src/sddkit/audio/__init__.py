"""sddkit.audio"""

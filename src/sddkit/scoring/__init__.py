"""sddkit.scoring"""

"""sddkit.evaluation"""

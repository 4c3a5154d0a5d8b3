"""sddkit.metrics"""

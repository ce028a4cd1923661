"""jobstore"""

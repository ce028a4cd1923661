"""requester"""

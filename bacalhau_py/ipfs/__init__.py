"""ipfs"""

"""placeholder"""
NAME = "data"
async def run(ctx):
    return []

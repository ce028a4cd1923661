"""placeholder"""
NAME = "scale"
async def run(ctx):
    return []

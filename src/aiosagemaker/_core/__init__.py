"""The sans-IO core: no aiobotocore, no aiohttp, no event loop."""

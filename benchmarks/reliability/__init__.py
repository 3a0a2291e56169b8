"""What survives replica kills, store outages, bad input, crashes mid-ingest and runaway user queries?"""

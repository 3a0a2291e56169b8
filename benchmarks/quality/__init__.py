"""Does retrieval find the right passages? SciFact and HotpotQA, the graph walk's tuning (dev splits only) and evaluation."""

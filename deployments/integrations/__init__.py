"""Retrievers for the frameworks apps are built with, over the Python client (deployments/client): LangChain
(`pip install graphrag-serve[langchain]`) and LlamaIndex (`graphrag-serve[llamaindex]`)."""

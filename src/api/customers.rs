//! `/customer/*`: end users (LiteLLM's customers).

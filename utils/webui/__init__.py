"""The XTTS fine-tuning WebUI: `app` builds and serves it; `context`, `paths` and `jobs` are what its tabs share
(the running WebUI's state, the rule for user-given paths, the training subprocess); `api` names the endpoints
for `gradio_client`; `tabs/` holds one module per tab. Nothing here trains: training runs as a
`python utils/gpt_train.py` subprocess."""

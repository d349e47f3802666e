"""irbot in Slack: the Bolt app (commands, clicks, App Home) and the messages irbot posts."""

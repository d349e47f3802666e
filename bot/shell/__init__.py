"""``irbot shell``: a local terminal chat with irbot, like Hubot's shell adapter.

People type the ``/incident`` commands they would type in Slack, press the approval and
task buttons by typing them (``approve RUN``), switch who they are with ``/as USER``, and
see each incident's thread printed as Slack would show it. The pieces:

- :mod:`bot.shell.lines`: what a typed line means (pure);
- :mod:`bot.shell.answers`: one line -> one call on :class:`bot.service.Service` -> the
  reply Slack would give, without Bolt;
- :mod:`bot.shell.thread`: the incident threads, followed from the timeline;
- :mod:`bot.shell.mrkdwn` and :mod:`bot.shell.terminal`: Slack text on a terminal;
- :mod:`bot.shell.session`: the loop that ties them together.
"""

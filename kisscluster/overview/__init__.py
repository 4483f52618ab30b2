"""kiss-overview: both nodes at a glance, gathered from this node and its peer (facts), judged
(assess), shown as a table or JSON (render, cli)."""

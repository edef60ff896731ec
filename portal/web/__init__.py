"""The pages: one blueprint module per page family (its templates in ``templates/<name>/``),
thin: parse the request, call the rules (:mod:`portal.rules`), render. Shared helpers are in
:mod:`portal.web.helpers`; :mod:`portal.web.site` puts the layer together."""

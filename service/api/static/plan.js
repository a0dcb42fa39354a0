// Edit a spec, plan it (POST /v1/plans) to see the trainable map or the 422's fields, submit it.
"use strict";

(() => {
  const { json, postJson } = Thaw;
  const DRAFT_ITEM = "thaw.planDraft";
  const STARTER = {
    name: "resnet18-plan",
    base_model: { source: "torchvision", name: "resnet18", weights: null },
    dataset: { synthetic: { num_classes: 10, num_examples: 256 } },
    freeze: {
      default: "frozen",
      rules: [
        { match: "layer4", trainable: true },
        { match: "fc", trainable: true },
      ],
    },
    schedule: [{ at_epoch: 3, unfreeze: ["layer3"], lr: 1e-4 }],
    hyperparameters: { epochs: 4, batch_size: 32, lr: 1e-3 },
  };

  const $ = (id) => document.getElementById(id);
  const editor = $("spec");
  editor.value = sessionStorage.getItem(DRAFT_ITEM) || JSON.stringify(STARTER, null, 2);
  editor.addEventListener("input", () => sessionStorage.setItem(DRAFT_ITEM, editor.value));

  function readSpec() {
    try {
      return JSON.parse(editor.value);
    } catch (error) {
      throw new Thaw.ApiProblem(400, { title: "Not JSON", detail: error.message });
    }
  }

  function busy(flag) {
    $("plan").disabled = flag;
    $("submit").disabled = flag;
  }

  $("plan").addEventListener("click", async () => {
    busy(true);
    $("problem").hidden = true;
    $("plan-summary").textContent = "";
    try {
      const table = await postJson("/v1/plans", readSpec());
      LayerMap.render($("layer-map"), table, new Set());
      const last = table.epochs[table.epochs.length - 1];
      const conditional = table.phases.filter((p) => p.conditional && p.start_epoch === null).length;
      $("plan-summary").textContent =
        (table.length ? table.length.text : table.epochs.length + " epochs") + ", " + LayerMap.phases(table).length + " phases" +
        (conditional ? " (+" + conditional + " on plateau)" : "") + "; last epoch trains " +
        Thaw.fmtNumber(last.trainable_params) + " of " + Thaw.fmtNumber(last.total_params) + " params" +
        (table.warnings.length ? " · warnings: " + table.warnings.join("; ") : "");
    } catch (error) {
      $("layer-map").replaceChildren();
      Thaw.showProblem($("problem"), error);
    } finally {
      busy(false);
    }
  });

  $("submit").addEventListener("click", async () => {
    busy(true);
    $("problem").hidden = true;
    try {
      const job = await postJson("/v1/jobs", readSpec());
      location.href = "/ui/jobs/" + encodeURIComponent(job.id);
    } catch (error) {
      Thaw.showProblem($("problem"), error);
    } finally {
      busy(false);
    }
  });

})();

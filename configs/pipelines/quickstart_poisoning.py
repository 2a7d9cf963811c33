# The quickstart with its poisoning rows: quickstart.py plus SSL-Backdoor and CTRL, which poison
# the same 3-epoch / 40 % SimCLR pretraining (two more pretrainings, about as long as the rest of
# the quickstart together), defended by CLP and BMAIU.  Same work dir as quickstart.py, so after
# `bash tools/quickstart.sh` only the poisoning steps run:
#   python tools/pipeline.py configs/pipelines/quickstart_poisoning.py
# At this scale the poisoning attacks do not take (ASR at the clean encoder's level; they need
# hundreds of SSL epochs, configs/pipelines/paper_cifar10.py): the rows show that, and what the
# defenses cost on an encoder with no working backdoor.  Needs the SSL-Backdoor trigger in
# $BMAIU_TRIGGER_ROOT (default data/triggers)/htba/.
_base_ = ['./quickstart.py']

attacks = dict(
    sslbackdoor=dict(
        name='SSL-Backdoor', type='poison', evaluate='sslbackdoor',
        config=dict(
            simclr='configs/attacks/sslbackdoor_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py'),
        cfg_options={'train_dataloader.dataset.dataset.indices': 20000}),
    ctrl=dict(
        name='CTRL', type='poison', evaluate='ctrl',
        config=dict(simclr='configs/attacks/ctrl_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py'),
        cfg_options={'train_dataloader.dataset.dataset.indices': 20000}),
)

studies = dict(
    table3=dict(attacks=['sslbackdoor', 'ctrl', 'badencoder', 'estas'], defenses=['clp', 'bmaiu']),
    search=dict(
        title='BMAIU with a searched custom trigger, and the fine-tuning-only control, on the '
        'fine-tuning attacks',
        table='grid', ssl=['simclr'], attacks=['badencoder', 'estas'],
        defenses=['clp', 'bmaiu', 'searched_trigger', 'finetune']),
)

estimates = {'*/sslbackdoor/none': 425, '*/ctrl/none': 365}
